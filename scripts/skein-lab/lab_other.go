//go:build !linux

package main

import "github.com/spf13/cobra"

// addLabCommands adds nothing: the lab needs Linux namespaces and cgroups.
func addLabCommands(*cobra.Command, *globalFlags) {}
