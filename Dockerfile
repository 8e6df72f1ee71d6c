# The cloudtrail-changes image: a builder stage that compiles the binary and assembles the
# runtime's files, and a runtime stage FROM scratch holding only those files (the stripped
# binary, the shared libraries ldd lists, Debian's CA bundle, a passwd entry for the non-root
# user 65532). config/default.toml is compiled into the binary.
#
#   docker build -t cloudtrail-changes:0.1.0 .          (or: buildah build ...)
#
# On a machine that can reach no registry (so rust:* cannot be pulled), scripts/image.sh builds
# the binary on the host, runs the same scripts/image-rootfs.sh into target/image/builder/rootfs
# and gives target/image/builder as the `builder` stage (buildah build --build-context
# builder=target/image/builder --target runtime): the runtime stage below is built unchanged.
#
# The root file system can be read-only: the daemon writes only spool files of large objects,
# to $TMPDIR (/tmp); mount a writable volume there (config/kubernetes/deployment.yaml does).

# Cargo.lock needs Rust 1.94 or later (the AWS SDK crates). The runtime stage takes glibc from
# this image. Override with --build-arg RUST_IMAGE=... (e.g. a mirror).
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cloudtrail-changes \
 && scripts/image-rootfs.sh target/release/cloudtrail-changes /rootfs

FROM scratch AS runtime
COPY --from=builder /rootfs/ /
USER 65532:65532
ENV TMPDIR=/tmp \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    NO_COLOR=1
# The subscription API (api.listen) and /metrics, /healthz, /readyz (admin.listen).
EXPOSE 8080 9464
ENTRYPOINT ["/usr/local/bin/cloudtrail-changes"]
CMD ["run"]
