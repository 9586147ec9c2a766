package policies

import _ "github.com/santhosh-tekuri/jsonschema/v6"
