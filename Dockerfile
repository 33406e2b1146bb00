# syntax=docker/dockerfile:1
# fleet: a static binary on distroless, running as nonroot.
#   docker build --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t fleet .

# Both base images are pinned by digest: the multi-arch index digest of the
# tag beside it, so that a tag pushed again cannot change what is built (the
# tag stays for the reader; the digest decides). To update one, bump the tag
# and take the digest of the index (the first "Digest:" line, not one of the
# per-platform manifests) from
#   docker buildx imagetools inspect golang:1.26.8-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
# and change tag and digest together. The Go image must be at least go.mod's
# go directive: it sets GOTOOLCHAIN=local, so it will not download a newer
# toolchain (TestDockerfile checks this).

FROM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
# The image's Go has vulnerabilities of its standard library fixed in a later
# patch release: the go command fetches that toolchain through the module
# proxy and checks it against the checksum database. govulncheck in the
# test command (.ci/vulncheck) checks fleet with this same toolchain.
ENV GOTOOLCHAIN=go1.26.10
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

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS runtime
COPY --from=build /out/fleet /fleet
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/fleet"]
CMD ["run"]
