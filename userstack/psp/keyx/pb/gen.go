// Package pb is the generated code of psp_gateway.proto.
//
// Regenerate with `go generate ./userstack/psp/keyx/pb/` (needs protoc from
// Debian's protobuf-compiler; the plugins come pinned from the module
// proxy) and commit the output.
package pb

//go:generate sh gen.sh
