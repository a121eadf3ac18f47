package jsonrpc_test

import (
	"encoding/json"
	"fmt"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

func ExampleDecode() {
	in := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools\/call","params":{"name":"search","_meta":{"progressToken":1}}}`)
	m, err := jsonrpc.Decode(in, jsonrpc.Limits{})
	if err != nil {
		panic(err)
	}
	name, _ := jsonrpc.Member(m.Params, "name")
	tool, _ := jsonrpc.Unquote(name)
	fmt.Println(m.Method, tool, m.IsRequest())

	// Rewrite one member; every other byte of params is forwarded as is.
	m.Params = jsonrpc.SetMember(m.Params, "_meta", json.RawMessage(`{"progressToken":"gw-1"}`))
	fmt.Printf("%s\n", m.Encode())
	// Output:
	// tools/call search true
	// {"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","_meta":{"progressToken":"gw-1"}}}
}

func ExampleDecode_invalid() {
	_, err := jsonrpc.Decode([]byte(`{"jsonrpc":"2.0","id":"q1","method":"a","Method":"b"}`), jsonrpc.Limits{})
	de := err.(*jsonrpc.DecodeError)
	resp := jsonrpc.NewError(de.ID, de.Code, de.Message, nil)
	fmt.Printf("%s\n", resp.Encode())
	// Output:
	// {"jsonrpc":"2.0","id":"q1","error":{"code":-32600,"message":"unknown member \"Method\""}}
}
