package http

// AddLogForTest lets the external tests add a request's log attribute as
// the servers do.
var AddLogForTest = addLog
