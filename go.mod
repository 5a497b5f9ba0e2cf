module github.com/ringkv/ringkv

go 1.26.8
