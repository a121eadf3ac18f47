package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
)

// customerURIPrefix starts the URI of every customer resource.
const customerURIPrefix = "demo://customers/"

// customer is one record of the fictional customer data set. Every value is
// made up; the card numbers are the payment networks' published test
// numbers, phone numbers are in ranges reserved for fiction (555-01xx in
// North America, Ofcom's drama ranges in the UK) and email domains are
// reserved for documentation (RFC 2606).
type customer struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Email      string `json:"email"`
	Phone      string `json:"phone"`
	CardNumber string `json:"card_number"`
	Address    string `json:"address"`
	Plan       string `json:"plan"`
}

// seedCustomers is the data set every server starts with, in ID order.
var seedCustomers = []customer{
	{ID: "cus_1001", Name: "Ana Ruiz", Email: "ana.ruiz@example.com", Phone: "+12025550143", CardNumber: "4111111111111111", Address: "1200 Harbor Way, Oakland, CA 94607, US", Plan: "pro"},
	{ID: "cus_1002", Name: "Ben Okafor", Email: "ben.okafor@example.net", Phone: "+442079460958", CardNumber: "5555555555554444", Address: "14 Fenwick Lane, London SE1 9XY, GB", Plan: "team"},
	{ID: "cus_1003", Name: "Chloé Martin", Email: "chloe.martin@example.org", Phone: "+13125550178", CardNumber: "378282246310005", Address: "77 W Lake Street, Chicago, IL 60601, US", Plan: "free"},
	{ID: "cus_1004", Name: "Dmitri Volkov", Email: "dmitri.volkov@example.com", Phone: "+16175550112", CardNumber: "4012888888881881", Address: "9 Beacon Court, Boston, MA 02108, US", Plan: "enterprise"},
	{ID: "cus_1005", Name: "Emma Lindqvist", Email: "emma.lindqvist@example.net", Phone: "+441632960341", CardNumber: "5105105105105100", Address: "3 Quayside, Newcastle NE1 3DX, GB", Plan: "pro"},
	{ID: "cus_1006", Name: "Farah Haddad", Email: "farah.haddad@example.org", Phone: "+14155550199", CardNumber: "6011111111111117", Address: "450 Mission Street, San Francisco, CA 94105, US", Plan: "team"},
	{ID: "cus_1007", Name: "Gustavo Pereira", Email: "gustavo.pereira@example.com", Phone: "+12065550167", CardNumber: "4242424242424242", Address: "2100 Alder Avenue, Seattle, WA 98121, US", Plan: "enterprise"},
	{ID: "cus_1008", Name: "Hana Suzuki", Email: "hana.suzuki@example.net", Phone: "+15125550136", CardNumber: "371449635398431", Address: "610 Congress Avenue, Austin, TX 78701, US", Plan: "free"},
	{ID: "cus_1009", Name: "Isaac Mensah", Email: "isaac.mensah@example.org", Phone: "+441134960722", CardNumber: "3566002020360505", Address: "21 Park Row, Leeds LS1 5HD, GB", Plan: "team"},
	{ID: "cus_1010", Name: "Julia Novak", Email: "julia.novak@example.com", Phone: "+13035550184", CardNumber: "2223003122003222", Address: "1550 Larimer Street, Denver, CO 80202, US", Plan: "pro"},
}

// customerStore is the in-memory customer data set of one server. It is safe
// for concurrent use.
type customerStore struct {
	mu   sync.RWMutex
	byID map[string]customer
}

func newCustomerStore() *customerStore {
	s := &customerStore{byID: make(map[string]customer, len(seedCustomers))}
	for _, c := range seedCustomers {
		s.byID[c.ID] = c
	}
	return s
}

func (s *customerStore) get(id string) (customer, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.byID[id]
	return c, ok
}

// byEmail finds a customer by email address, ignoring case.
func (s *customerStore) byEmail(email string) (customer, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.byID {
		if strings.EqualFold(c.Email, email) {
			return c, true
		}
	}
	return customer{}, false
}

// all returns the customers still in the store, in ID order.
func (s *customerStore) all() []customer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]customer, 0, len(s.byID))
	for _, c := range seedCustomers {
		if _, ok := s.byID[c.ID]; ok {
			out = append(out, c)
		}
	}
	return out
}

// delete removes the customers with the given IDs and reports which were
// deleted and which were not there.
func (s *customerStore) delete(ids []string) (deleted, notFound []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.byID[id]; ok {
			delete(s.byID, id)
			deleted = append(deleted, id)
		} else {
			notFound = append(notFound, id)
		}
	}
	return deleted, notFound
}

const customerSchema = `{
  "type": "object",
  "properties": {
    "id": {"type": "string", "description": "Customer ID, for example cus_1001."},
    "name": {"type": "string", "description": "Full name."},
    "email": {"type": "string", "description": "Email address."},
    "phone": {"type": "string", "description": "Phone number in E.164 form."},
    "card_number": {"type": "string", "description": "Payment card number on file (a published test number)."},
    "address": {"type": "string", "description": "Postal address."},
    "plan": {"type": "string", "enum": ["free", "pro", "team", "enterprise"], "description": "Subscription plan."}
  },
  "required": ["id", "name", "email", "phone", "card_number", "address", "plan"],
  "additionalProperties": false
}`

var lookupCustomerTool = mcp.NewTool("lookup_customer",
	mcp.WithToolTitle("Look up a customer"),
	mcp.WithDescription("Look up one customer of the fictional demo data set and return the full record: "+
		"name, email, phone, payment card number, postal address and plan. "+
		"Give exactly one of customer_id (for example cus_1001) or email."),
	mcp.WithString("customer_id",
		mcp.Pattern(`^cus_[0-9]+$`),
		mcp.Description("Customer ID, for example cus_1001. Give this or email, not both."),
	),
	mcp.WithString("email",
		mcp.MinLength(3),
		mcp.MaxLength(254),
		mcp.Description("Customer's email address, matched without regard to case. Give this or customer_id, not both."),
	),
	mcp.WithSchemaAdditionalProperties(false),
	mcp.WithRawOutputSchema([]byte(customerSchema)),
	mcp.WithToolAnnotation(mcp.ToolAnnotation{
		Title:           "Look up a customer",
		ReadOnlyHint:    mcp.ToBoolPtr(true),
		DestructiveHint: mcp.ToBoolPtr(false),
		IdempotentHint:  mcp.ToBoolPtr(true),
		OpenWorldHint:   mcp.ToBoolPtr(false),
	}),
)

type lookupCustomerArgs struct {
	CustomerID string `json:"customer_id"`
	Email      string `json:"email"`
}

func (d *demo) lookupCustomer(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var args lookupCustomerArgs
	if err := req.BindArguments(&args); err != nil {
		return toolError("lookup_customer: invalid arguments: %v", err), nil
	}
	var (
		c  customer
		ok bool
	)
	switch {
	case args.CustomerID != "" && args.Email != "":
		return toolError("lookup_customer: give customer_id or email, not both"), nil
	case args.CustomerID != "":
		if c, ok = d.store.get(args.CustomerID); !ok {
			return toolError("lookup_customer: no customer with id %q", args.CustomerID), nil
		}
	case args.Email != "":
		if c, ok = d.store.byEmail(args.Email); !ok {
			return toolError("lookup_customer: no customer with email %q", args.Email), nil
		}
	default:
		return toolError("lookup_customer: give customer_id or email"), nil
	}
	text, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("lookup customer: %w", err)
	}
	return mcp.NewToolResultStructured(c, string(text)), nil
}

var deleteRecordsTool = mcp.NewTool("delete_records",
	mcp.WithToolTitle("Delete customer records"),
	mcp.WithDescription("Permanently delete customer records from the demo server's store (they come back only "+
		"when the server restarts) and return how many were deleted. IDs that do not exist are reported, "+
		"not treated as errors, so repeating a call has no further effect."),
	mcp.WithArray("customer_ids",
		mcp.Required(),
		mcp.MinItems(1),
		mcp.MaxItems(100),
		mcp.UniqueItems(true),
		mcp.WithStringItems(mcp.Pattern(`^cus_[0-9]+$`)),
		mcp.Description("IDs of the customers to delete, for example [\"cus_1001\"]."),
	),
	mcp.WithSchemaAdditionalProperties(false),
	mcp.WithRawOutputSchema([]byte(`{
  "type": "object",
  "properties": {
    "deleted": {"type": "integer", "minimum": 0, "description": "How many records were deleted."},
    "deleted_ids": {"type": "array", "items": {"type": "string"}, "description": "IDs of the deleted records."},
    "not_found": {"type": "array", "items": {"type": "string"}, "description": "IDs that were not in the store."}
  },
  "required": ["deleted", "deleted_ids", "not_found"],
  "additionalProperties": false
}`)),
	mcp.WithToolAnnotation(mcp.ToolAnnotation{
		Title:           "Delete customer records",
		ReadOnlyHint:    mcp.ToBoolPtr(false),
		DestructiveHint: mcp.ToBoolPtr(true),
		IdempotentHint:  mcp.ToBoolPtr(true),
		OpenWorldHint:   mcp.ToBoolPtr(false),
	}),
)

type deleteRecordsArgs struct {
	CustomerIDs []string `json:"customer_ids"`
}

type deleteRecordsResult struct {
	Deleted    int      `json:"deleted"`
	DeletedIDs []string `json:"deleted_ids"`
	NotFound   []string `json:"not_found"`
}

func (d *demo) deleteRecords(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var args deleteRecordsArgs
	if err := req.BindArguments(&args); err != nil {
		return toolError("delete_records: invalid arguments: %v", err), nil
	}
	if len(args.CustomerIDs) == 0 {
		return toolError("delete_records: customer_ids must name at least one customer"), nil
	}
	ids := slices.Compact(slices.Sorted(slices.Values(args.CustomerIDs)))
	deleted, notFound := d.store.delete(ids)
	out := deleteRecordsResult{
		Deleted:    len(deleted),
		DeletedIDs: append([]string{}, deleted...),
		NotFound:   append([]string{}, notFound...),
	}
	if len(deleted) > 0 {
		uris := make([]string, len(deleted))
		for i, id := range deleted {
			uris[i] = customerURIPrefix + id
		}
		d.mcp.DeleteResources(uris...)
	}
	d.log.Info("customer records deleted", logKeyDeleted, deleted, logKeyNotFound, notFound)

	text := fmt.Sprintf("Deleted %d customer record(s)", out.Deleted)
	if len(deleted) > 0 {
		text += ": " + strings.Join(deleted, ", ")
	}
	text += "."
	if len(notFound) > 0 {
		text += " Not found: " + strings.Join(notFound, ", ") + "."
	}
	return mcp.NewToolResultStructured(out, text), nil
}

// addResources registers one resource per customer, the customer resource
// template (which also answers for customers deleted since listing), and the
// sandbox README.
func (d *demo) addResources() {
	for _, c := range d.store.all() {
		d.mcp.AddResource(mcp.NewResource(customerURIPrefix+c.ID, "customer-"+c.ID,
			mcp.WithResourceTitle(c.Name),
			mcp.WithResourceDescription(fmt.Sprintf("Customer record %s (%s plan), as JSON.", c.ID, c.Plan)),
			mcp.WithMIMEType("application/json"),
		), d.readCustomerResource)
	}
	d.mcp.AddResourceTemplate(mcp.NewResourceTemplate(customerURIPrefix+"{id}", "customer",
		mcp.WithTemplateTitle("Customer record"),
		mcp.WithTemplateDescription("A customer record of the fictional demo data set, as JSON; id is a customer ID such as cus_1001."),
		mcp.WithTemplateMIMEType("application/json"),
	), d.readCustomerResource)
	d.mcp.AddResource(mcp.NewResource(sandboxReadmeURI, "sandbox-readme",
		mcp.WithResourceTitle("About the demo sandbox"),
		mcp.WithResourceDescription("What the demo server's sandbox is and how the file tools treat it."),
		mcp.WithMIMEType("text/markdown"),
	), d.readSandboxReadme)
}

func (d *demo) readCustomerResource(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	contents, err := d.customerContents(req.Params.URI)
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{contents}, nil
}

// customerContents renders the customer named by a demo://customers/{id} URI.
func (d *demo) customerContents(uri string) (mcp.TextResourceContents, error) {
	id, ok := strings.CutPrefix(uri, customerURIPrefix)
	if !ok {
		return mcp.TextResourceContents{}, fmt.Errorf("read resource: %q is not a customer URI", uri)
	}
	c, ok := d.store.get(id)
	if !ok {
		return mcp.TextResourceContents{}, fmt.Errorf("read resource: no customer with id %q", id)
	}
	text, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return mcp.TextResourceContents{}, fmt.Errorf("read resource: %w", err)
	}
	return mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(text)}, nil
}

// sandboxReadmeURI names the static resource describing the sandbox.
const sandboxReadmeURI = "demo://sandbox/README"

const sandboxReadme = `# The demo sandbox

The sallyport-demo server can read files from exactly one folder, its sandbox,
chosen with ` + "`sallyport demo-server --sandbox DIR`" + `.

- read_file returns UTF-8 text files of at most 1 MiB; list_files lists a folder.
- Paths are relative to the sandbox. A path that leaves it, through "..", an
  absolute path or a symlink pointing outside, is refused.
- Nothing in the sandbox can be written through this server.

The sample sandbox shipped with Sallyport (examples/demo-sandbox) holds a team
plan, an orders export and a service configuration file with a fake AWS key,
so that the gateway's DLP stage has something to find.
`

func (d *demo) readSandboxReadme(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	return []mcp.ResourceContents{mcp.TextResourceContents{
		URI:      sandboxReadmeURI,
		MIMEType: "text/markdown",
		Text:     sandboxReadme,
	}}, nil
}

// addPrompts registers the summarize_customer prompt.
func (d *demo) addPrompts() {
	d.mcp.AddPrompt(mcp.NewPrompt("summarize_customer",
		mcp.WithPromptTitle("Summarize a customer"),
		mcp.WithPromptDescription("Ask the model for a short account summary of one customer; the customer record is embedded as a resource."),
		mcp.WithArgument("customer_id",
			mcp.RequiredArgument(),
			mcp.ArgumentDescription("Customer ID, for example cus_1001."),
		),
	), d.summarizeCustomer)
}

func (d *demo) summarizeCustomer(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	id := req.Params.Arguments["customer_id"]
	if id == "" {
		return nil, fmt.Errorf("get prompt: customer_id is required")
	}
	contents, err := d.customerContents(customerURIPrefix + id)
	if err != nil {
		return nil, err
	}
	return mcp.NewGetPromptResult(
		"Summarize customer "+id,
		[]mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(
				"Write a three-sentence summary of the customer in the attached record for an account manager: "+
					"who they are, which plan they are on, and how to reach them. "+
					"Show only the last four digits of the card number.")),
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewEmbeddedResource(contents)),
		},
	), nil
}
