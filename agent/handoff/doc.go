// Package handoff passes the agent's listening sockets from a running agent
// to its successor, so that an agent restart or upgrade never closes them:
// no connect is refused, no connection waiting in a backlog is lost.
//
// The running agent serves a unix socket (mode 0600). A starting agent
// connects to it, asks for the listeners, and gets them as file descriptors
// (SCM_RIGHTS) with their names. Both processes then hold the same sockets:
// the new agent starts accepting and acknowledges; the old one stops
// accepting, drains what it was serving within its drain timeout, and exits.
// If nothing answers on the socket, the new agent listens afresh.
package handoff
