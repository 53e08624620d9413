# One image with every cluster-proxy binary at / (SPEC §2): multi-arch,
# CGO off, non-root (uid 65532). Build with `make images`.
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /workspace
COPY go.mod go.sum ./
RUN go mod download
ARG VERSION=dev
COPY cmd/ cmd/
COPY pkg/ pkg/
COPY internal/ internal/
COPY hack/build.sh hack/build.sh
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH hack/build.sh /out "$VERSION"

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/ /
USER 65532:65532
