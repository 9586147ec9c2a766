// Command weft-cluster runs internal/clustertest's single-node cluster by
// hand, for a developer who wants to look around (tests start their own):
//
//	go run ./internal/clustertest/cmd/weft-cluster up       # images built, cluster left running
//	go run ./internal/clustertest/cmd/weft-cluster kubectl get pods -A
//	go run ./internal/clustertest/cmd/weft-cluster shell    # a shell in the cluster's netns, KUBECONFIG set
//	go run ./internal/clustertest/cmd/weft-cluster down     # everything removed (also after a crash)
//
// As root, from the repository's root. -name picks the cluster (default
// "weft-dev"), so it never meets a test's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weft-dev/weft/internal/clustertest"
	"github.com/weft-dev/weft/internal/images"
	"github.com/weft-dev/weft/internal/tooltest"
)

func main() {
	name := flag.String("name", "weft-dev", "cluster name (netns, work dir, cgroups)")
	base := flag.String("base-dir", clustertest.DefaultBaseDir(), "parent of the work dir")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: weft-cluster [-name N] up|down|status|kubectl ARGS...|shell\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *name, *base, flag.Args()); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "weft-cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, name, base string, args []string) error {
	dir := filepath.Join(base, name)
	kubeconfig := filepath.Join(dir, "cfg", "admin.kubeconfig")
	nsenter := func(argv ...string) error {
		cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + clustertest.NetnsPath(name), "--"}, argv...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+tooltest.BinDir()+":"+os.Getenv("PATH"))
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		return cmd.Run()
	}
	switch args[0] {
	case "up":
		root, err := os.Getwd()
		if err != nil {
			return err
		}
		res, err := images.Build(ctx, images.Options{Root: root, Out: filepath.Join(root, "out", "images"), Log: os.Stderr})
		if err != nil {
			return err
		}
		c, err := clustertest.Up(ctx, clustertest.Options{
			Name: name, BaseDir: base, Images: res.Layout, Detach: true,
			Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
		})
		if err != nil {
			return err
		}
		fmt.Printf("cluster %s is up (%s)\n  netns %s, work dir %s, logs in %s/logs\n  weft-cluster -name %s kubectl get pods -A\n",
			c.Name, c.Phase("up").Round(time.Millisecond), c.Netns, c.Dir, c.Dir, name)
		return nil
	case "down":
		t := time.Now()
		if err := clustertest.Teardown(base, name); err != nil {
			return err
		}
		if left := clustertest.Leftovers(base, name); len(left) > 0 {
			return fmt.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
		fmt.Printf("cluster %s removed in %s (logs kept in %s/logs)\n", name, time.Since(t).Round(time.Millisecond), dir)
		return nil
	case "status":
		if left := clustertest.Leftovers(base, name); len(left) > 0 {
			fmt.Printf("cluster %s:\n  %s\n", name, strings.Join(left, "\n  "))
			return nil
		}
		fmt.Printf("no cluster %s\n", name)
		return nil
	case "kubectl":
		return nsenter(append([]string{"kubectl"}, args[1:]...)...)
	case "shell":
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		return nsenter(sh)
	}
	flag.Usage()
	return fmt.Errorf("unknown command %q", args[0])
}
