# syntax=docker/dockerfile:1
#
# One static binary on distroless: no shell, no package manager, non-root.
#
#   docker build -t ghcr.io/banksync/banksync:latest .    # BuildKit (Docker ≥ 23)
#   docker run --rm ghcr.io/banksync/banksync:latest core -h
#
# The Kubernetes manifests in deploy/k8s run this image as `core` and as
# `channel`, configured through BANKSYNC_* environment variables only.

# The builder runs on the build machine's platform and cross-compiles, so a
# multi-platform build (--platform linux/amd64,linux/arm64) needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# CGO is not needed: the SQLite driver is pure Go (modernc.org/sqlite).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags='-s -w' -o /out/banksync ./cmd/banksync

# static: CA certificates and time zones, no libc; nonroot: uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/banksync /banksync
USER 65532:65532
# channel 8080, core 8081 and ops 9090
EXPOSE 8080 8081 9090
ENTRYPOINT ["/banksync"]
