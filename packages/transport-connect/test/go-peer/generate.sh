#!/usr/bin/env bash
# Regenerates test/go-peer/gen (needs Go; installs the two protoc plugins into a temp GOBIN).
set -euo pipefail
cd "$(dirname "$0")/../.."
gobin="$(mktemp -d)"
trap 'rm -rf "$gobin"' EXIT
GOBIN="$gobin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
GOBIN="$gobin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.1
rm -rf test/go-peer/gen
PATH="$gobin:$PWD/node_modules/.bin:$PATH" buf generate --template test/go-peer/buf.gen.yaml --path proto/mount --path proto/migration
