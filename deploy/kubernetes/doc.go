// Package kubernetes holds the manifests that run xdpstack as a
// DaemonSet and the Containerfile of its image; its test decodes the
// manifests strictly into the upstream API types and checks them. It is
// a module of its own so that the Kubernetes modules stay out of the
// daemon's build list.
package kubernetes
