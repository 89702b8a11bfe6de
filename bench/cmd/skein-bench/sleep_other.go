//go:build !linux

package main

import "time"

func preciseThread() (release func()) { return func() {} }

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
