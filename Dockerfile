# The webhook image, for those who build with Docker: equivalent to
# `make image`, which builds the same image without Docker (internal/image):
# the static binary as the entrypoint, run as nonroot (65532), with CA
# certificates, no shell.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t registry.example.com/podpreset-webhook:TAG .
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /podpreset-webhook ./cmd/podpreset-webhook

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /podpreset-webhook /podpreset-webhook
USER 65532:65532
ENTRYPOINT ["/podpreset-webhook"]
