// Package ociimage writes container images reproducibly, without a
// container engine and without a registry: a [Tree] of files becomes one
// image layer (a tar with sorted entries, fixed timestamps, numeric owners
// and no build-host paths), an [Image] (layers + config, os/architecture
// set) becomes an OCI image, and [WriteLayout] writes images into an OCI
// image layout directory whose index.json names each one, ready for
// `ctr images import` (see [WriteArchive]).
//
// Same inputs, same bytes: two builds from the same files give the same
// layer, config and manifest digests. The inputs are the files' bytes,
// paths, modes and owners, the image config and the creation time (a fixed
// [Epoch] unless SOURCE_DATE_EPOCH says otherwise) — never the build
// host's clock, umask, user names or directory names. Layers are
// uncompressed tars (see [Image.Build] for why), so no compressor's
// version is an input.
//
// [Tree.AddELF] copies a dynamically linked program with the shared
// libraries it needs (DT_NEEDED, recursively, and the program
// interpreter), found where the dynamic loader would find them on the
// build host, at the same paths in the image.
//
// It owns only the image format. What goes into weft's images is
// internal/images. It imports nothing of weft.
package ociimage
