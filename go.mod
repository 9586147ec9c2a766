module github.com/weft-dev/weft

go 1.26
