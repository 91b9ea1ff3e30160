# tunnelkeeper container image: multi-stage, small runtime, non-root.
#
#   docker build -t tunnelkeeper .
#   docker run -d --name tunnelkeeper -p 9478:9478 \
#     --sysctl net.ipv4.ping_group_range="0 2147483647" \
#     -v /etc/tunnelkeeper:/etc/tunnelkeeper:ro -v tunnelkeeper-state:/var/lib/tunnelkeeper \
#     tunnelkeeper
#
# ICMP: the image runs as an unprivileged user and uses DGRAM ICMP sockets, which need
# the container's net.ipv4.ping_group_range to include its group (the --sysctl above; on
# ECS, systemControls). Or set `socket = "raw"` in the config and run with
# `--cap-add NET_RAW` (on ECS: linuxParameters.capabilities.add).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
# The runbook is compiled in (the pages quote it).
COPY docs ./docs
COPY config ./config
COPY tests ./tests
RUN cargo build --release --locked --bin tunnelkeeper \
 && strip target/release/tunnelkeeper

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tunnelkeeper --shell /usr/sbin/nologin tunnelkeeper \
 && mkdir -p /etc/tunnelkeeper /var/lib/tunnelkeeper \
 && chown tunnelkeeper:tunnelkeeper /var/lib/tunnelkeeper
COPY --from=build /src/target/release/tunnelkeeper /usr/local/bin/tunnelkeeper
COPY config/example.toml /usr/share/doc/tunnelkeeper/example.toml
USER 10001:10001
VOLUME ["/var/lib/tunnelkeeper"]
EXPOSE 9478
ENV TUNNELKEEPER_CONFIG=/etc/tunnelkeeper/config.toml RUST_LOG=info
# The binary is its own health probe: no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tunnelkeeper", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tunnelkeeper"]
CMD ["run", "--log-format", "json"]
