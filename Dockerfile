# slipway for teams that build images with Docker (or Buildah, Kaniko). Without Docker,
# `slipway image build --output slipway.tar` writes an equivalent OCI archive from a built binary.
#
#   docker build -t slipway .
#   docker run -p 5000:5000 -v slipway-data:/var/lib/slipway slipway
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p slipway \
 && SLIPWAY_ORT_DIR=/opt/onnxruntime scripts/fetch-onnxruntime.sh > /tmp/onnxruntime-path \
 && cp "$(cat /tmp/onnxruntime-path)" /tmp/libonnxruntime.so

FROM debian:bookworm-slim
# CA certificates for TLS to object storage, webhooks and alert receivers; libstdc++ for ONNX
# Runtime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 slipway \
 && useradd --uid 65532 --gid 65532 --home-dir /var/lib/slipway --shell /usr/sbin/nologin slipway \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/slipway
COPY --from=build /src/target/release/slipway /usr/local/bin/slipway
COPY --from=build /tmp/libonnxruntime.so /usr/local/lib/slipway/libonnxruntime.so
ENV ORT_DYLIB_PATH=/usr/local/lib/slipway/libonnxruntime.so
USER 65532:65532
WORKDIR /var/lib/slipway
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/slipway"]
# HTTPS with a certificate mounted at /etc/slipway/tls (tls.crt, tls.key): with --auth on a
# public address slipway refuses plain HTTP, so credentials never cross a network in clear.
CMD ["server", "--host", "0.0.0.0", "--port", "5000", "--auth", \
     "--tls-cert", "/etc/slipway/tls/tls.crt", "--tls-key", "/etc/slipway/tls/tls.key", \
     "--backend-store-uri", "sqlite:////var/lib/slipway/slipway.db", \
     "--artifacts-destination", "/var/lib/slipway/artifacts"]
