// Command agentctl is Skein's debug CLI. It talks to the node's agent over
// the admin socket (/run/skein/admin.sock).
package main

import (
	"errors"
	"fmt"
	"os"
)

// Set by the linker.
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	if err := newRoot(os.Stdout).Execute(); err != nil {
		if !errors.Is(err, errInvalid) {
			fmt.Fprintln(os.Stderr, "agentctl:", err)
		}
		os.Exit(1)
	}
}
