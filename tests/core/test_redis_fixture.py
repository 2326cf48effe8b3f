import subprocess

from tests.support.redis_server import RedisServer


def test_redis_refuses_clients_without_the_password(redis_server: RedisServer) -> None:
    """The guide's step 2 checks, verbatim against the test server."""
    port = str(redis_server.port)
    unauthenticated = subprocess.run(
        ["redis-cli", "-p", port, "ping"], capture_output=True, text=True, timeout=10
    )
    assert unauthenticated.stdout.strip() == "NOAUTH Authentication required."
    authenticated = subprocess.run(
        ["redis-cli", "-p", port, "--pass", redis_server.password, "ping"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert authenticated.stdout.strip() == "PONG"
    assert redis_server.client().ping() is True
