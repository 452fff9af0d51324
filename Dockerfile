# The agent image: one static-enough `egressor` binary on a distroless base; the DaemonSet that
# `egressor deploy` applies runs `egressor agent ...` from it.
#
#   docker build -t ghcr.io/egressor/egressor:0.1.0 .
#   egressor deploy --image ghcr.io/egressor/egressor:0.1.0
#
# It cannot be built on the development machine (no container engine, no registry); CI that has
# one builds it. The build compiles the eBPF probes with clang (build.rs) and the bundled DuckDB
# (~30 minutes on 2 cores). The image needs no shell and runs as root with only the capabilities
# the DaemonSet grants (BPF, NET_ADMIN, PERFMON).
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev linux-libc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin egressor && strip target/release/egressor

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/egressor /usr/local/bin/egressor
ENTRYPOINT ["/usr/local/bin/egressor"]
CMD ["agent"]
