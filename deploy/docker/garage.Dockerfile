# Garage (https://garagehq.deuxfleurs.fr/) for livebucket's compose stack,
# profile "garage": an S3 server for people without one. Build context: the
# repository root.
#
#   docker build -f deploy/docker/garage.Dockerfile .
#       the default target, `runtime`: the official static binary from the
#       dxflrs/garage image, in debian:bookworm-slim (the init service needs
#       a shell)
#   docker build -f deploy/docker/garage.Dockerfile --target runtime-prebuilt \
#       --build-arg GARAGE_BIN=path/in/context/garage .
#       the same image around a Garage binary built beforehand, e.g. the one
#       scripts/install-deps builds (scripts/docker-images does this)
#
# As in livebucket.Dockerfile, runtime-prebuilt comes before the stage that
# pulls an image, so Docker's classic builder can build it offline.

ARG GARAGE_VERSION=v2.5.0

FROM debian:bookworm-slim AS runtime-base
RUN useradd --system --uid 990 --user-group --home-dir /var/lib/garage \
        --shell /usr/sbin/nologin garage \
    && install -d -o garage -g garage -m 0750 /var/lib/garage
COPY deploy/docker/garage.toml /etc/garage.toml
COPY deploy/docker/garage-docker /usr/local/bin/garage-docker
# S3 API; RPC and admin stay inside the container.
EXPOSE 3900
HEALTHCHECK --interval=5s --timeout=5s --start-period=20s --retries=3 \
    CMD ["garage-docker", "healthcheck"]
ENTRYPOINT ["garage-docker"]
CMD ["server"]

FROM runtime-base AS runtime-prebuilt
# The file must be called `garage`; the trailing `*` is explained in
# livebucket.Dockerfile.
ARG GARAGE_BIN=garage
COPY deploy/docker/garage-docker ${GARAGE_BIN}* /usr/local/bin/

FROM dxflrs/garage:${GARAGE_VERSION} AS upstream

FROM runtime-base AS runtime
COPY --from=upstream /garage /usr/local/bin/garage
RUN garage --version
