# bq-backup container image: `docker build -t bq-backup .`
# Runs `bq-backup serve` on $PORT (8080) as a non-root user; any other subcommand works too:
# `docker run --rm -v $PWD/req.json:/req.json bq-backup backup --request /req.json`.

# --- build -------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Dependencies first, against a dummy crate: this layer is reused until Cargo.toml or
# Cargo.lock change, so editing the code does not rebuild every dependency.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin bq-backup \
    && rm -rf src

COPY src ./src
# COPY keeps the files' own timestamps, which may be older than the dummy build: touch the crate
# roots so cargo rebuilds bq-backup itself instead of shipping the dummy binary.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin bq-backup

# --- run ---------------------------------------------------------------------------------------
# glibc, libgcc, CA certificates and tzdata; no shell, no package manager. TLS is rustls.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/bq-backup /usr/local/bin/bq-backup
USER nonroot
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/bq-backup"]
CMD ["serve"]
