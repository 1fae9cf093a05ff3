// The operations the tests send. The queries and mutations are the ones in
// src/operations.graphql (what codegen types and lists in the trusted-
// documents manifest), one document per operation; the rest are here.

import { readFileSync } from 'node:fs';
import { parse } from 'graphql';
import { gql } from '@apollo/client';

const source = readFileSync(new URL('../src/operations.graphql', import.meta.url), 'utf8');

/** Register, Login, Me, CreatePost, Posts, UpdatePost, Logout: DocumentNodes. */
export const ops = Object.fromEntries(
  parse(source).definitions.map((definition) => [
    definition.name.value,
    { kind: 'Document', definitions: [definition] },
  ]),
);

export const CreateApiToken = gql`
  mutation CreateApiToken($name: String!) {
    createApiToken(name: $name) {
      token
      apiToken {
        id
        name
      }
    }
  }
`;

export const RevokeApiToken = gql`
  mutation RevokeApiToken($id: ID!) {
    revokeApiToken(id: $id)
  }
`;

export const Sessions = gql`
  query Sessions {
    sessions {
      id
      current
    }
  }
`;

export const LogoutOtherSessions = gql`
  mutation LogoutOtherSessions {
    logoutOtherSessions
  }
`;

// Subscriptions, from the contract's Subscription type (graphql-transport-ws
// at /graphql/ws).
export const PostCreated = gql`
  subscription PostCreated {
    postCreated {
      id
      title
      author {
        username
      }
    }
  }
`;

export const SessionEnded = gql`
  subscription SessionEnded {
    sessionEnded
  }
`;

/** A username no other test of any run uses (3-32 of A-Z a-z 0-9 _ . -). */
let next = 0;
export function username(kind = 'u') {
  return `${kind}_${process.pid}_${next++}_${Math.random().toString(36).slice(2, 8)}`.slice(0, 32);
}

export const PASSWORD = 'correct horse battery';
