// graphql-codegen's client preset over the server's schema: typed documents
// in src/gql/, and src/gql/persisted-documents.json (SHA-256 of each
// document -> its text), the manifest BLOGQL_TRUSTED_DOCUMENTS loads.
import type { CodegenConfig } from '@graphql-codegen/cli';
import { addTypenameSelectionDocumentTransform } from '@graphql-codegen/client-preset';

const config: CodegenConfig = {
  schema: '../../schema.graphql',
  documents: ['src/**/*.graphql', 'src/**/*.ts', '!src/gql/**/*'],
  ignoreNoDocuments: false,
  generates: {
    './src/gql/': {
      preset: 'client',
      // Apollo Client's cache adds __typename to what it sends; a listed
      // document must have it too, or the cache cannot normalise its answer.
      documentTransforms: [addTypenameSelectionDocumentTransform],
      presetConfig: {
        // The ids must be SHA-256 hex, as the contract says (set explicitly:
        // some releases defaulted to SHA-1).
        persistedDocuments: { hashAlgorithm: 'sha256' },
      },
      config: {
        enumsAsTypes: true,
        scalars: { DateTime: 'string' },
      },
    },
  },
};

export default config;
