package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// The fixture content the suite's scenarios expect (see each scenario's
// "Server Implementation Requirements" in @modelcontextprotocol/conformance).
const (
	// pngPixel is a 1x1 PNG.
	pngPixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
	// wavSilence is a WAV file holding one silent 16-bit sample.
	wavSilence = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

	loggerName = "conformance-test-server"
	// stepPause is the pause between the notifications of the logging and
	// progress tools (the scenarios ask for about 50 ms).
	stepPause = 50 * time.Millisecond
)

// jsonSchema202012 is json_schema_2020_12_tool's input schema, sent as these
// bytes: the json-schema-2020-12 scenario checks that $schema, $defs and
// additionalProperties arrive unchanged.
const jsonSchema202012 = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "$defs": {
    "address": {
      "type": "object",
      "properties": {
        "street": {"type": "string"},
        "city": {"type": "string"}
      }
    }
  },
  "properties": {
    "name": {"type": "string"},
    "address": {"$ref": "#/$defs/address"}
  },
  "additionalProperties": false
}`

// fixture holds what the tool handlers need besides their request.
type fixture struct {
	srv  *server.MCPServer
	sent *deliveries
	log  *log.Logger
}

// newServer builds the MCP server with the whole fixture catalog.
func newServer(sent *deliveries, logger *log.Logger) *server.MCPServer {
	completions := completer{}
	srv := server.NewMCPServer(serverName, serverVersion,
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(true, true),
		server.WithPromptCapabilities(true),
		server.WithCompletions(),
		server.WithPromptCompletionProvider(completions),
		server.WithResourceCompletionProvider(completions),
		server.WithLogging(),
		server.WithElicitation(),
	)
	srv.EnableSampling()
	f := &fixture{srv: srv, sent: sent, log: logger}
	f.addTools()
	f.addResources()
	f.addPrompts()
	return srv
}

// ---------------------------------------------------------------------------
// Tools

func (f *fixture) addTools() {
	noArgs := func(name, description string) mcp.Tool {
		return mcp.NewTool(name, mcp.WithDescription(description))
	}
	f.srv.AddTool(noArgs("test_simple_text", "Returns a simple text response"),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("This is a simple text response for testing."), nil
		})
	f.srv.AddTool(noArgs("test_image_content", "Returns an image (a 1x1 PNG)"),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewImageContent(pngPixel, "image/png")}}, nil
		})
	f.srv.AddTool(noArgs("test_audio_content", "Returns audio (a one-sample WAV)"),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewAudioContent(wavSilence, "audio/wav")}}, nil
		})
	f.srv.AddTool(noArgs("test_embedded_resource", "Returns an embedded text resource"),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{
				mcp.NewEmbeddedResource(mcp.TextResourceContents{
					URI: "test://embedded-resource", MIMEType: "text/plain", Text: "This is an embedded resource content.",
				}),
			}}, nil
		})
	f.srv.AddTool(noArgs("test_multiple_content_types", "Returns text, an image and an embedded resource"),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{
				mcp.NewTextContent("Multiple content types test:"),
				mcp.NewImageContent(pngPixel, "image/png"),
				mcp.NewEmbeddedResource(mcp.TextResourceContents{
					URI: "test://mixed-content-resource", MIMEType: "application/json", Text: `{"test":"data","value":123}`,
				}),
			}}, nil
		})
	f.srv.AddTool(noArgs("test_error_handling", "Always returns a tool error (isError: true)"),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultError("This tool intentionally returns an error for testing"), nil
		})
	f.srv.AddTool(noArgs("test_tool_with_logging", "Sends three info log messages about 50 ms apart"), f.withLogging)
	f.srv.AddTool(noArgs("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100 about 50 ms apart"), f.withProgress)
	f.srv.AddTool(mcp.NewTool("test_sampling",
		mcp.WithDescription("Asks the client's LLM (sampling/createMessage) and returns its answer"),
		mcp.WithString("prompt", mcp.Description("The prompt sent to the LLM"), mcp.Required()),
	), f.sampling)
	f.srv.AddTool(mcp.NewTool("test_elicitation",
		mcp.WithDescription("Asks the user for a username and an email (elicitation/create)"),
		mcp.WithString("message", mcp.Description("The message shown to the user"), mcp.Required()),
	), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return f.elicit(ctx, "User response", req.GetString("message", ""), map[string]any{
			"type": "object",
			"properties": map[string]any{
				"username": map[string]any{"type": "string", "description": "User's response"},
				"email":    map[string]any{"type": "string", "description": "User's email address"},
			},
			"required": []string{"username", "email"},
		})
	})
	f.srv.AddTool(noArgs("test_elicitation_sep1034_defaults", "Elicits a form whose fields have defaults (SEP-1034)"),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return f.elicit(ctx, "Elicitation completed", "Please review and update the form fields with defaults", map[string]any{
				"type": "object",
				"properties": map[string]any{
					"name":     map[string]any{"type": "string", "description": "User name", "default": "John Doe"},
					"age":      map[string]any{"type": "integer", "description": "User age", "default": 30},
					"score":    map[string]any{"type": "number", "description": "User score", "default": 95.5},
					"status":   map[string]any{"type": "string", "description": "User status", "enum": []string{"active", "inactive", "pending"}, "default": "active"},
					"verified": map[string]any{"type": "boolean", "description": "Verification status", "default": true},
				},
			})
		})
	f.srv.AddTool(noArgs("test_elicitation_sep1330_enums", "Elicits a form with the five enum shapes (SEP-1330)"),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			titled := func(prefix string) []any {
				return []any{
					map[string]any{"const": "value1", "title": prefix + " One"},
					map[string]any{"const": "value2", "title": prefix + " Two"},
					map[string]any{"const": "value3", "title": prefix + " Three"},
				}
			}
			options := []string{"option1", "option2", "option3"}
			return f.elicit(ctx, "Elicitation completed", "Please select options from the enum fields", map[string]any{
				"type": "object",
				"properties": map[string]any{
					"untitledSingle": map[string]any{"type": "string", "description": "Untitled single-select", "enum": options},
					"titledSingle":   map[string]any{"type": "string", "description": "Titled single-select", "oneOf": titled("Option")},
					"legacyEnum": map[string]any{"type": "string", "description": "Legacy titled enum",
						"enum": []string{"opt1", "opt2", "opt3"}, "enumNames": []string{"Option One", "Option Two", "Option Three"}},
					"untitledMulti": map[string]any{"type": "array", "description": "Untitled multi-select",
						"items": map[string]any{"type": "string", "enum": options}},
					"titledMulti": map[string]any{"type": "array", "description": "Titled multi-select",
						"items": map[string]any{"anyOf": titled("Choice")}},
				},
			})
		})
	f.srv.AddTool(mcp.NewToolWithRawSchema("json_schema_2020_12_tool",
		"Takes an input schema with JSON Schema 2020-12 keywords ($schema, $defs, additionalProperties)",
		json.RawMessage(jsonSchema202012)),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			args, err := json.Marshal(req.GetArguments())
			if err != nil {
				return nil, fmt.Errorf("encode arguments: %w", err)
			}
			return mcp.NewToolResultText("Received: " + string(args)), nil
		})
}

// withLogging sends three info log messages, honouring the session's log
// level, and returns once they are written.
func (f *fixture) withLogging(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	target := f.sent.count()
	for i, text := range []string{"Tool execution started", "Tool processing data", "Tool execution completed"} {
		if i > 0 {
			if err := pause(ctx, stepPause); err != nil {
				return nil, err
			}
		}
		sent, err := f.logInfo(ctx, text)
		if err != nil {
			return nil, fmt.Errorf("send log message: %w", err)
		}
		if sent {
			target++
		}
	}
	f.awaitDelivery(ctx, target, "test_tool_with_logging")
	return mcp.NewToolResultText("Tool with logging executed successfully"), nil
}

// logInfo sends an info-level notifications/message unless the session's
// level is above info, and reports whether it sent one.
func (f *fixture) logInfo(ctx context.Context, text string) (bool, error) {
	if s, ok := server.ClientSessionFromContext(ctx).(server.SessionWithLogging); ok {
		if level := s.GetLogLevel(); level != "" && !mcp.LoggingLevelInfo.ShouldSendTo(level) {
			return false, nil
		}
	}
	err := f.srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationMessage), map[string]any{
		"level": mcp.LoggingLevelInfo, "logger": loggerName, "data": text,
	})
	return err == nil, err
}

// withProgress reports progress 0, 50 and 100 of 100 when the request has a
// progress token, and returns once the notifications are written.
func (f *fixture) withProgress(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var token mcp.ProgressToken
	if req.Params.Meta != nil {
		token = req.Params.Meta.ProgressToken
	}
	target := f.sent.count()
	for i, progress := range []int{0, 50, 100} {
		if i > 0 {
			if err := pause(ctx, stepPause); err != nil {
				return nil, err
			}
		}
		if token == nil {
			continue
		}
		err := f.srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
			"progressToken": token, "progress": progress, "total": 100,
		})
		if err != nil {
			return nil, fmt.Errorf("send progress: %w", err)
		}
		target++
	}
	f.awaitDelivery(ctx, target, "test_tool_with_progress")
	return mcp.NewToolResultText(fmt.Sprintf("Progress tool completed (progress token %v)", token)), nil
}

// awaitDelivery waits until target notifications have been written, so that
// the result does not overtake them.
func (f *fixture) awaitDelivery(ctx context.Context, target uint64, tool string) {
	if !f.sent.wait(ctx, target) {
		f.log.Printf("%s: notifications not written within %v; returning anyway", tool, deliveryWait)
	}
}

func (f *fixture) sampling(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	//lint:ignore SA1019 the suite's tools-call-sampling scenario (protocol 2025-06-18 and 2025-11-25) needs sampling/createMessage
	res, err := f.srv.RequestSampling(ctx, mcp.CreateMessageRequest{
		Request: mcp.Request{Method: string(mcp.MethodSamplingCreateMessage)},
		CreateMessageParams: mcp.CreateMessageParams{
			Messages: []mcp.SamplingMessage{{
				Role: mcp.RoleUser, Content: mcp.NewTextContent(req.GetString("prompt", "")),
			}},
			MaxTokens: 100,
		},
	})
	if err != nil {
		return mcp.NewToolResultError("sampling failed: " + err.Error()), nil
	}
	text := "(no text content)"
	if c, ok := res.Content.(mcp.TextContent); ok {
		text = c.Text
	}
	return mcp.NewToolResultText("LLM response: " + text), nil
}

// elicit sends elicitation/create with message and schema and returns the
// answer as text after label.
func (f *fixture) elicit(ctx context.Context, label, message string, schema map[string]any) (*mcp.CallToolResult, error) {
	res, err := f.srv.RequestElicitation(ctx, mcp.ElicitationRequest{
		Request: mcp.Request{Method: string(mcp.MethodElicitationCreate)},
		Params:  mcp.ElicitationParams{Message: message, RequestedSchema: schema},
	})
	if err != nil {
		return mcp.NewToolResultError("elicitation failed: " + err.Error()), nil
	}
	content, err := json.Marshal(res.Content)
	if err != nil {
		return nil, fmt.Errorf("encode elicitation content: %w", err)
	}
	return mcp.NewToolResultText(fmt.Sprintf("%s: action=%s, content=%s", label, res.Action, content)), nil
}

// pause sleeps for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ---------------------------------------------------------------------------
// Resources

func (f *fixture) addResources() {
	f.srv.AddResource(mcp.NewResource("test://static-text", "static-text",
		mcp.WithResourceTitle("Static Text Resource"),
		mcp.WithResourceDescription("A static text resource"),
		mcp.WithMIMEType("text/plain")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{
				URI: "test://static-text", MIMEType: "text/plain", Text: "This is the content of the static text resource.",
			}}, nil
		})
	f.srv.AddResource(mcp.NewResource("test://static-binary", "static-binary",
		mcp.WithResourceTitle("Static Binary Resource"),
		mcp.WithResourceDescription("A static binary resource (a 1x1 PNG)"),
		mcp.WithMIMEType("image/png")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.BlobResourceContents{
				URI: "test://static-binary", MIMEType: "image/png", Blob: pngPixel,
			}}, nil
		})
	f.srv.AddResourceTemplate(mcp.NewResourceTemplate("test://template/{id}/data", "template",
		mcp.WithTemplateDescription("A resource template with an {id} parameter"),
		mcp.WithTemplateMIMEType("application/json")),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			id := templateID(req.Params.URI)
			body, err := json.Marshal(map[string]any{"id": id, "templateTest": true, "data": "Data for ID: " + id})
			if err != nil {
				return nil, fmt.Errorf("encode template data: %w", err)
			}
			return []mcp.ResourceContents{mcp.TextResourceContents{
				URI: req.Params.URI, MIMEType: "application/json", Text: string(body),
			}}, nil
		})
}

// templateID returns the {id} of a test://template/{id}/data URI.
func templateID(uri string) string {
	rest, ok := strings.CutPrefix(uri, "test://template/")
	if !ok {
		return ""
	}
	id, ok := strings.CutSuffix(rest, "/data")
	if !ok || strings.Contains(id, "/") {
		return ""
	}
	return id
}

// ---------------------------------------------------------------------------
// Prompts

func (f *fixture) addPrompts() {
	f.srv.AddPrompt(mcp.NewPrompt("test_simple_prompt",
		mcp.WithPromptTitle("Simple Test Prompt"),
		mcp.WithPromptDescription("A prompt without arguments")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{
				{Role: mcp.RoleUser, Content: mcp.NewTextContent("This is a simple prompt for testing.")},
			}}, nil
		})
	f.srv.AddPrompt(mcp.NewPrompt("test_prompt_with_arguments",
		mcp.WithPromptTitle("Prompt With Arguments"),
		mcp.WithPromptDescription("A prompt with two required arguments"),
		mcp.WithArgument("arg1", mcp.ArgumentDescription("First test argument"), mcp.RequiredArgument()),
		mcp.WithArgument("arg2", mcp.ArgumentDescription("Second test argument"), mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			text := fmt.Sprintf("Prompt with arguments: arg1='%s', arg2='%s'", req.Params.Arguments["arg1"], req.Params.Arguments["arg2"])
			return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{
				{Role: mcp.RoleUser, Content: mcp.NewTextContent(text)},
			}}, nil
		})
	f.srv.AddPrompt(mcp.NewPrompt("test_prompt_with_embedded_resource",
		mcp.WithPromptTitle("Prompt With Embedded Resource"),
		mcp.WithPromptDescription("A prompt that embeds the resource it is given"),
		mcp.WithArgument("resourceUri", mcp.ArgumentDescription("URI of the resource to embed"), mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{
				{Role: mcp.RoleUser, Content: mcp.NewEmbeddedResource(mcp.TextResourceContents{
					URI: req.Params.Arguments["resourceUri"], MIMEType: "text/plain", Text: "Embedded resource content for testing.",
				})},
				{Role: mcp.RoleUser, Content: mcp.NewTextContent("Please process the embedded resource above.")},
			}}, nil
		})
	f.srv.AddPrompt(mcp.NewPrompt("test_prompt_with_image",
		mcp.WithPromptTitle("Prompt With Image"),
		mcp.WithPromptDescription("A prompt that includes an image")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{
				{Role: mcp.RoleUser, Content: mcp.NewImageContent(pngPixel, "image/png")},
				{Role: mcp.RoleUser, Content: mcp.NewTextContent("Please analyze the image above.")},
			}}, nil
		})
}

// ---------------------------------------------------------------------------
// Completion

// completer completes test_prompt_with_arguments' arguments and the
// template's {id} from fixed lists, by prefix. Anything else completes to
// nothing.
type completer struct{}

var (
	promptArgValues = []string{"test", "test-alpha", "test-beta", "paris", "park"}
	templateIDs     = []string{"123", "124", "456"}
)

func (completer) CompletePromptArgument(_ context.Context, prompt string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	if prompt != "test_prompt_with_arguments" || (arg.Name != "arg1" && arg.Name != "arg2") {
		return &mcp.Completion{Values: []string{}}, nil
	}
	return complete(promptArgValues, arg.Value), nil
}

func (completer) CompleteResourceArgument(_ context.Context, uri string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	if uri != "test://template/{id}/data" || arg.Name != "id" {
		return &mcp.Completion{Values: []string{}}, nil
	}
	return complete(templateIDs, arg.Value), nil
}

func complete(values []string, prefix string) *mcp.Completion {
	out := []string{}
	for _, v := range values {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return &mcp.Completion{Values: out, Total: len(out)}
}

var (
	_ server.PromptCompletionProvider   = completer{}
	_ server.ResourceCompletionProvider = completer{}
)
