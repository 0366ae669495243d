import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // Small functions: a longer one is split, or says here why it cannot be.
    files: ['src/**/*.ts', 'plugins/**/*.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    // The builtins are ordinary plugins: they use the public plugin API (src/index.ts) and
    // nothing else of the program, so a site plugin can do whatever they do.
    files: ['plugins/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/src/*', '!**/src/index.js', '**/src/*/**', '**/dist/**'],
              message:
                "plugins import the program only through its public plugin API, '../../src/index.js' (the package 'zfs-dynamic-creator'); export what is missing there",
            },
          ],
        },
      ],
    },
  },
);
