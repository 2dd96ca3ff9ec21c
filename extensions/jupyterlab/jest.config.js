// Jest runs the TypeScript sources through ts-jest in a jsdom window. Packages shipped
// as ES modules only (the JupyterLab UI toolkit's web components and their helpers) are
// transformed too, as FEASIBILITY.md found necessary once ui-components is imported.
const esModules = [
  '@jupyter/',
  '@microsoft/',
  '@jupyterlab/',
  '@lumino/',
  'exenv-es6',
  'lib0',
  'y-protocols',
  'yjs',
  '@codemirror/',
  '@lezer/',
  'nanoid',
  'vscode-ws-jsonrpc'
].join('|');

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'jsdom',
  roots: ['<rootDir>/test'],
  testRegex: '.*\\.spec\\.tsx?$',
  setupFiles: ['<rootDir>/test/setup.js'],
  moduleFileExtensions: ['ts', 'tsx', 'js', 'jsx', 'json'],
  moduleNameMapper: {
    '\\.(css|less|svg)$': '<rootDir>/test/style-stub.js'
  },
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }],
    '^.+\\.jsx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }]
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esModules}))`],
  collectCoverageFrom: ['src/**/*.{ts,tsx}', '!src/**/*.d.ts'],
  coverageReporters: ['text-summary', 'lcov']
};
