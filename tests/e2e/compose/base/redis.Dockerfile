# A stand-in for redis:7.2-alpine, for machines with no registry: Debian's redis-server
# (7.0 on bookworm), the user redis (uid 999) and the official entrypoint's behaviour:
# run as root only long enough to own /data, then drop to redis.
FROM local/bookworm:base
# hadolint ignore=DL3008
RUN groupadd --system --gid 1000 redis \
    && useradd --system --uid 999 --gid redis --home-dir /data --shell /usr/sbin/nologin redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o redis -g redis -m 0755 /data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
