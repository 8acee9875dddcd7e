# nginx-rtmp for livebucket's compose stack: Debian's nginx and
# libnginx-mod-rtmp, configured at start from environment variables by
# scripts/render-nginx-conf (deploy/docker/nginx-rtmp-docker). Build context:
# the repository root.
#
#   docker build -f deploy/docker/nginx-rtmp.Dockerfile .

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx libnginx-mod-rtmp \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/lib.sh scripts/render-nginx-conf /opt/livebucket/scripts/
COPY nginx/nginx.conf.in /opt/livebucket/nginx/
COPY deploy/docker/nginx-rtmp-docker /opt/livebucket/deploy/docker/
# RTMP for streamers. Viewers and API clients go to livebucket's own port.
EXPOSE 1935
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/opt/livebucket/deploy/docker/nginx-rtmp-docker", "healthcheck"]
ENTRYPOINT ["/opt/livebucket/deploy/docker/nginx-rtmp-docker"]
