# bq-backup container image: `docker build -t bq-backup .`
# Runs `bq-backup serve` on $PORT (8080 unless the platform sets it) as uid 65532 (non-root); any
# other subcommand works too:
# `docker run --rm -v $PWD/req.json:/req.json bq-backup backup --request /req.json`.
# `scripts/check-runtime.sh` proves, without Docker, that the binary needs nothing beyond what the
# runtime image ships and serves /healthz as a non-root user.

# --- build -------------------------------------------------------------------------------------
# Bookworm, like the runtime image: the binary links against glibc 2.36 at most.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# Dependencies first, against a dummy crate: this layer is reused until Cargo.toml or
# Cargo.lock change, so editing the code does not rebuild every dependency. Every target the
# manifest declares must exist for cargo to read it, hence the stub bench.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/encode.rs \
    && cargo build --release --locked --bin bq-backup \
    && rm -rf src benches

COPY src ./src
COPY benches ./benches
# COPY keeps the files' own timestamps, which may be older than the dummy build: touch the crate
# roots so cargo rebuilds bq-backup itself instead of shipping the dummy binary.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin bq-backup

# --- run ---------------------------------------------------------------------------------------
# glibc, libgcc, CA certificates (read by rustls-native-certs) and tzdata; no shell, no package
# manager. TLS is rustls.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/bq-backup /usr/local/bin/bq-backup
# Numeric, so that Kubernetes' `runAsNonRoot` can verify it (a user name cannot be checked).
USER 65532:65532
# Cloud Run sets PORT itself; elsewhere 8080.
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/bq-backup"]
CMD ["serve"]
