//go:build !linux

package cgroup

import "errors"

// ID is only meaningful on Linux.
func ID(path string) (uint64, error) {
	return 0, errors.New("cgroup ids need Linux")
}
