module kubefuncs.example/gofn

go 1.19

require (
	github.com/gomodule/redigo v1.8.3
	github.com/vmihailenco/msgpack/v5 v5.3.5
)

require github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect

// Built offline from Debian's packages (golang-github-gomodule-redigo-dev,
// golang-github-vmihailenco-msgpack.v5-dev): GOPROXY=off GOFLAGS=-mod=mod go build.
replace (
	github.com/gomodule/redigo => /usr/share/gocode/src/github.com/gomodule/redigo
	github.com/vmihailenco/msgpack/v5 => /usr/share/gocode/src/github.com/vmihailenco/msgpack/v5
	github.com/vmihailenco/tagparser/v2 => /usr/share/gocode/src/github.com/vmihailenco/tagparser/v2
)
