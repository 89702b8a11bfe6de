//go:build !linux

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newRunCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the lab benchmarks (Linux only)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("run: the lab needs Linux") },
	}
}
