package framework

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildBinary compiles the Go package pkg (an import path, or a path
// relative to the repository root such as "./cmd/manager") with
// `go build -o <tmp>/<name> <pkg>`, run from RepoRoot, and returns the
// binary's path. The binary is the only file in a new temporary directory;
// the caller removes it with os.RemoveAll(filepath.Dir(path)), typically in
// AfterSuite. The `go` command is looked up in PATH (`go test` puts the Go
// toolchain that runs the tests first). A failed build's error quotes the
// compiler output.
func BuildBinary(pkg, name string) (string, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return "", fmt.Errorf("failed to build %s: the name %q is not a plain file name", pkg, name)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("failed to find the go command to build %s: %w", pkg, err)
	}
	dir, err := os.MkdirTemp("", "build-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("failed to create a temporary directory for %s: %w", name, err)
	}
	path := filepath.Join(dir, name)

	cmd := exec.Command(goBin, "build", "-o", path, pkg)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("failed to build %s: %w\n%s", pkg, err, out.String())
	}
	return path, nil
}
