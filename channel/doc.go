// Package channel is the transfer server of the channel tier (채널계): it
// takes customers' transfers without ever running one twice or reporting a
// false failure, and keeps each account's transaction history a prefix of
// core's ledger through one sync engine.
package channel
