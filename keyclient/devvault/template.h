// `cmkfs-vault apply FILE`: the vault's side of the article's Resource Manager template, as one
// JSON document of what should exist:
//   {"identities": [{"name": "registry"}],
//    "keys": [{"name": "cmk", "kty": "RSA", "size": 3072}],
//    "accessPolicies": [{"identity": "registry" | "[system]", "permissions": ["get", "wrapKey", "unwrapKey"]},
//                       {"objectId": "...", "permissions": [...]}],
//    "networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": ["10.0.0.0/8"]}}
// Identities and keys are made when missing (an existing key keeps its versions); a policy gets
// exactly the permissions listed; the firewall becomes exactly what is given. Applying the same
// file twice changes nothing. Unknown fields are refused before anything changes.
#pragma once

#include "keyclient/devvault/vault.h"

namespace cmkfs::devvault {

// REQUIRES: the vault's lock. 200 with {changed: [...], unchanged: [...], identities: {name:
// {clientId, principalId}}, keys: {name: kid}}; 400 with nothing changed when the document is
// malformed.
Reply apply_template(Vault& vault, const json& doc);

}  // namespace cmkfs::devvault
