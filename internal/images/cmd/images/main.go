// Command images builds weft's container images into an OCI image layout
// (`make images` runs it): see internal/images.
//
//	go run ./internal/images/cmd/images [-out out/images] [-tag dev]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/weft-dev/weft/internal/images"
)

func main() {
	root, _ := os.Getwd()
	out := flag.String("out", "out/images", "output folder (OCI layout in OUT/oci, binaries in OUT/bin, OUT/images.txt)")
	tag := flag.String("tag", images.DefaultTag, "tag of every image")
	flag.StringVar(&root, "root", root, "the weft module's root")
	envoy := flag.String("envoy", "", "envoy binary (default: envoy in $WEFT_TOOLS_BIN or ROOT/.tools/bin)")
	flag.Parse()
	if !filepath.IsAbs(*out) {
		*out = filepath.Join(root, *out)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := images.Build(ctx, images.Options{Root: root, Out: *out, Tag: *tag, Envoy: *envoy, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, r := range res.Refs {
		fmt.Printf("%s %s\n", r, res.Digests[r])
	}
}
