package main

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// preciseThread prepares the calling goroutine's thread for sleepUntil: it
// locks the goroutine to it and sets the thread's timer slack to 1ns (the
// default 50us would blur the schedule).
func preciseThread() (release func()) {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	return runtime.UnlockOSThread
}

// sleepUntil sleeps until t with nanosleep(2). The Go runtime's own timers
// wake a process whose threads are all idle through epoll_wait, whose
// timeout has millisecond granularity: a fixed-rate schedule at 1,000 rps
// would then lag its due times by up to a millisecond, more than the
// latency being measured.
func sleepUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		ts := unix.NsecToTimespec(int64(d))
		if err := unix.Nanosleep(&ts, nil); err == nil {
			return
		}
	}
}
