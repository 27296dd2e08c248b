package engine

// FirstBackoff lets the tests (package engine_test) shorten the wait
// before the first reconnect.
var FirstBackoff = &firstBackoff
