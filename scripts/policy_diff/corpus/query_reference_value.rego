# Offline stand-in for Trustee's regorus extension `query_reference_value(name)` (attestation-service
# registers it, reading RVPS): the reference value's "value" from `data.rv[name]`, or null when unknown.
package policy

query_reference_value(id) := v if {
	v := data.rv[id]
} else := null
