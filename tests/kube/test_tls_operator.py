"""TLS on Kubernetes, end to end against the emulated API server: the operator's own CA
and certificates, or cert-manager Certificates when the spec names an issuer (the test
plays cert-manager), and a renewed certificate rolling the server that reads it at start."""

from __future__ import annotations

import base64

from cryptography import x509
from madgroup.kube import certificates
from madgroup.kube.meta import Owner

from tests.support.kube import (
    NS,
    SECRETS,
    create_group,
    mark_ready,
    request,
    roll_out,
    workload,
)
from tests.support.waiting import async_wait_for

CERTIFICATES = "cert-manager.io/v1/certificates"


def _cert(apiserver, name: str) -> x509.Certificate:
    data = apiserver.live(SECRETS, NS, name)["data"]
    return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))


def _revision(apiserver, component: str) -> str | None:
    template = workload(apiserver, "demo", component)["spec"]["template"]
    return (template["metadata"].get("annotations") or {}).get(certificates.REVISION_ANNOTATION)


def _pod_secrets(apiserver, component: str) -> set[str]:
    pod = workload(apiserver, "demo", component)["spec"]["template"]["spec"]
    return {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}


async def test_the_operator_makes_the_ca_and_each_servers_certificate(apiserver, operator):
    await create_group(apiserver, "demo", {"tls": {"enabled": True}})
    await roll_out(apiserver, "demo")
    ca = _cert(apiserver, "demo-ca")
    for server in ("redis", "grace"):
        cert = _cert(apiserver, f"demo-{server}-tls")
        cert.verify_directly_issued_by(ca)  # raises if another key signed it
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f"demo-{server}.{NS}.svc" in names.get_values_for_type(x509.DNSName)
    assert _pod_secrets(apiserver, "redis") == {"demo-redis-tls"}
    assert _pod_secrets(apiserver, "grace") == {"demo-grace-tls"}
    assert _pod_secrets(apiserver, "fiedler") == {"demo-redis-tls"}  # items: ca.crt only
    assert _pod_secrets(apiserver, "sequential_thinking") == set()
    live = apiserver.live(SECRETS, NS, "demo-redis-tls")
    assert _revision(apiserver, "redis") == certificates.revision(live)
    assert _revision(apiserver, "grace") is None  # Grace takes a renewed one up by itself

    # Renewal: a new certificate (here: the Secret deleted, so the operator makes another)
    # changes Redis's template, so the StatefulSet rolls it.
    before = _revision(apiserver, "redis")
    await request(apiserver, "DELETE", f"/api/v1/namespaces/{NS}/secrets/demo-redis-tls")
    await async_wait_for(
        lambda: apiserver.live(SECRETS, NS, "demo-redis-tls") is not None, what="a new certificate"
    )
    await async_wait_for(
        lambda: _revision(apiserver, "redis") not in (None, before), what="Redis rolled"
    )
    _cert(apiserver, "demo-redis-tls").verify_directly_issued_by(ca)  # the same CA


async def test_with_an_issuer_cert_manager_writes_the_secrets(apiserver, operator):
    issuer = {"name": "group-ca", "kind": "ClusterIssuer"}
    await create_group(apiserver, "demo", {"tls": {"enabled": True, "issuerRef": issuer}})
    await async_wait_for(lambda: workload(apiserver, "demo", "redis"), what="redis applied")
    certificate = apiserver.live(CERTIFICATES, NS, "demo-redis-tls")
    assert certificate["spec"]["secretName"] == "demo-redis-tls"
    assert certificate["spec"]["issuerRef"] == {**issuer, "group": "cert-manager.io"}
    assert f"demo-redis.{NS}.svc.cluster.local" in certificate["spec"]["dnsNames"]
    made = apiserver.names(SECRETS, NS)
    assert "demo-ca" not in made and "demo-redis-tls" not in made  # cert-manager's job
    assert apiserver.live(CERTIFICATES, NS, "demo-grace-tls") is None  # with Grace's step

    # cert-manager writes the Secret; the operator pins Redis's template to it.
    owner = Owner("demo", NS, "")
    ca = certificates.load_ca(certificates.ca_secret(owner).manifest(owner))
    secret = certificates.server_secret(owner, "redis").manifest(owner, ca)
    await request(apiserver, "POST", f"/api/v1/namespaces/{NS}/secrets", secret)
    await async_wait_for(
        lambda: _revision(apiserver, "redis") == certificates.revision(secret), what="Redis pinned"
    )
    await mark_ready(apiserver, "demo", "redis")
    await async_wait_for(
        lambda: workload(apiserver, "demo", "sequential_thinking"), what="st applied"
    )
    await mark_ready(apiserver, "demo", "sequential_thinking")
    await async_wait_for(
        lambda: apiserver.live(CERTIFICATES, NS, "demo-grace-tls"), what="Grace's Certificate"
    )
