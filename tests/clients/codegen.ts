// graphql-codegen's client preset over the server's schema: typed documents
// in src/gql/, and src/gql/persisted-documents.json (SHA-256 of each
// document -> its text), the manifest BLOGQL_TRUSTED_DOCUMENTS loads.
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: '../../schema.graphql',
  documents: ['src/**/*.graphql', 'src/**/*.ts', '!src/gql/**/*'],
  ignoreNoDocuments: false,
  generates: {
    './src/gql/': {
      preset: 'client',
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
