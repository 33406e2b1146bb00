# syntax=docker/dockerfile:1
# fleet: a static binary on distroless, running as nonroot.
#   docker build --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t fleet .

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a change to the code reuses the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/fleet ./cmd/fleet

FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/fleet /fleet
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/fleet"]
CMD ["run"]
