# livebucket's image. Build context: the repository root (see .dockerignore).
#
#   docker build -f deploy/docker/livebucket.Dockerfile .
#       the default target, `runtime`: livebucket compiled in a Rust image,
#       copied into debian:bookworm-slim (what compose.yaml builds)
#   docker build -f deploy/docker/livebucket.Dockerfile --target runtime-prebuilt \
#       --build-arg LIVEBUCKET_BIN=target/release/livebucket .
#       the same runtime image around a binary built beforehand (for glibc
#       2.36, i.e. on Debian 12); scripts/docker-images does this for the
#       tests, where no Rust image can be pulled
#
# Both targets are `runtime-base` plus the binary at /usr/local/bin/livebucket.
# The stages are in this order on purpose: Docker's classic builder (Debian's
# docker.io and docker-compose 1.29) builds every stage above --target, so
# runtime-prebuilt must come before the Rust stage to build without it.

ARG RUST_VERSION=1.95

FROM debian:bookworm-slim AS runtime-base
# ca-certificates: S3 over https (AWS, most providers). Nothing else: the
# entrypoint is bash, setpriv comes with util-linux.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# livebucket runs as a user of its own (uid 990), not as nginx's worker
# (www-data, uid 33, in the nginx-rtmp container): a compromised worker can
# touch nothing of livebucket's in the volumes they share (its captures, its
# socket). The entrypoint lays out the HLS volume and drops every capability
# (livebucket makes each stream's directory, which nginx's worker writes into
# through its group). A fresh state volume takes the owner of
# /var/lib/livebucket.
RUN useradd --system --uid 990 --user-group --home-dir /var/lib/livebucket \
        --no-create-home --shell /usr/sbin/nologin livebucket \
    && install -d -o livebucket -g livebucket -m 0750 /var/lib/livebucket /run/livebucket-config \
    && install -d -o livebucket -g www-data -m 2750 /run/livebucket
COPY deploy/docker/livebucket-docker /usr/local/bin/livebucket-docker
# The public listener: /play, the VOD API, the OSS LiveChannel API. nginx's
# callbacks come over the Unix socket /run/livebucket/hooks.sock; /metrics
# and /healthz answer on the container's 127.0.0.1:9090 only.
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["livebucket-docker", "healthcheck"]
# SIGTERM: stop taking callbacks, finish uploads in flight, journal the rest.
STOPSIGNAL SIGTERM
ENTRYPOINT ["livebucket-docker"]
CMD ["serve"]

FROM runtime-base AS runtime-prebuilt
# Path of the binary inside the build context; the file must be called
# `livebucket`. The trailing `*` lets a context without it pass here: the
# classic builder also runs this stage on its way to `runtime` (its first
# source, the entrypoint again, is always there). scripts/docker-images
# checks that a prebuilt image runs `livebucket --version`.
ARG LIVEBUCKET_BIN=target/release/livebucket
COPY deploy/docker/livebucket-docker ${LIVEBUCKET_BIN}* /usr/local/bin/

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
RUN cargo build --release --locked --bin livebucket \
    && install -m 0755 target/release/livebucket /livebucket

FROM runtime-base AS runtime
COPY --from=build /livebucket /usr/local/bin/livebucket
RUN livebucket --version
