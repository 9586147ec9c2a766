// Package images defines weft's container images and builds them without
// Docker, without a registry and without network access: the weft image
// (localhost/weft), the proxy image (localhost/weft-proxy), the pod
// sandbox's pause image (localhost/pause) and a busybox test image
// (localhost/weft-testapp), all tagged DefaultTag ("dev") unless told
// otherwise. What each image holds is the one table in definitions
// (images.go); [Build] compiles the static Go binaries, takes Envoy from
// .tools and the rest (iptables with its libraries and extensions,
// busybox, CA certificates, glibc for Envoy) from the build host's Debian
// packages, and writes an OCI image layout through internal/ociimage.
// Reproducible: the same inputs give the same digests (fixed times,
// sorted entries, numeric owners, -trimpath binaries).
//
// `make images` runs cmd/images; internal/clustertest imports the layout
// into the test cluster's containerd. It imports nothing of weft but
// internal/ociimage (the binaries are built by `go build`, not linked).
package images
