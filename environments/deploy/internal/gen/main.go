// Command gen writes environments/deploy/install.yaml: the kustomize base
// of that folder built with kustomize's Go API, with a header. `make
// generate` (scripts/generate.sh) runs it after controller-gen;
// TestInstallYAMLIsCurrent fails when the file is stale.
//
//	go run ./environments/deploy/internal/gen [-o FILE]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/weft-dev/weft/environments/deploy"
	"github.com/weft-dev/weft/environments/deploy/internal/kustomize"
)

func main() {
	dir := flag.String("dir", "environments/deploy", "the kustomize base")
	out := flag.String("o", filepath.Join("environments", "deploy", deploy.InstallFile), "output file")
	flag.Parse()
	b, err := kustomize.Build(filesys.MakeFsOnDisk(), *dir)
	if err == nil {
		err = os.WriteFile(*out, append([]byte(deploy.InstallHeader), b...), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
