// cnidriver: a minimal CNI runtime on Debian's libcni (golang-github-appc-cni-dev, 1.1.2), as
// containerd, CRI-O and podman embed it. The end-to-end tests build it with
//   GOPATH=/usr/share/gocode GO111MODULE=off go build -o DIR/cnidriver cnidriver.go
// and run it to drive ADD, CHECK and DEL of a whole plugin list.
//
// Usage: cnidriver add|check|del CONFLIST CONTAINER_ID NETNS IFNAME [CAPABILITY_ARGS_JSON]
// Environment: CNI_PATH (plugin directories, colon separated), CNI_CACHE_DIR (libcni's cache).
// ADD prints the list's result; a failure prints libcni's error on stderr and exits 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	if len(os.Args) < 6 {
		fmt.Fprintln(os.Stderr, "usage: cnidriver add|check|del CONFLIST CONTAINER_ID NETNS IFNAME [CAPABILITY_ARGS_JSON]")
		os.Exit(2)
	}
	command, file := os.Args[1], os.Args[2]
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		fail(err)
	}
	runtime := &libcni.RuntimeConf{
		ContainerID: os.Args[3],
		NetNS:       os.Args[4],
		IfName:      os.Args[5],
		Args:        [][2]string{{"IgnoreUnknown", "1"}},
	}
	if len(os.Args) > 6 && os.Args[6] != "" {
		if err := json.Unmarshal([]byte(os.Args[6]), &runtime.CapabilityArgs); err != nil {
			fail(fmt.Errorf("capability args: %v", err))
		}
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), os.Getenv("CNI_CACHE_DIR"), nil)
	ctx := context.Background()
	switch strings.ToLower(command) {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, runtime)
		if err != nil {
			fail(err)
		}
		if err := result.Print(); err != nil {
			fail(err)
		}
	case "check":
		err = cni.CheckNetworkList(ctx, list, runtime)
	case "del":
		err = cni.DelNetworkList(ctx, list, runtime)
	default:
		err = fmt.Errorf("unknown command %q", command)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
