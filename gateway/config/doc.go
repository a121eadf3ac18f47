// Package config reads, checks and writes Sallyport's YAML configuration.
//
// Reading follows one path: Parse decodes the document strictly (unknown
// keys at any level, duplicate keys, several documents and an empty file
// are errors), expands ${VAR}, ${VAR:-default} and $$ in string values on
// the YAML node tree before anything is decoded, decodes into Config, fills
// in defaults and runs Validate. Every problem found is returned, not just
// the first, and each names the file, the line where YAML gives one, and
// the field: `sallyport.yaml:14: backends[0].url "ftp://x": scheme must be
// http or https`.
//
// A field left out, or set to its zero value, takes its default; Default
// documents them all. Values of backend env and headers are treated as
// secrets: they never appear in an error.
package config
