# A stand-in for python:3.11-slim-bookworm, for machines with no registry: Debian's own
# Python 3.11 in a virtualenv at /usr/local, so python, python3 and pip are in
# /usr/local/bin as in the official image (and pip installs without PEP 668's refusal).
FROM local/bookworm:base
ENV LANG=C.UTF-8 \
    PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && python3 -m venv /usr/local \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
