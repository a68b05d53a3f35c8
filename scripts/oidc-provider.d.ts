// oidc-provider ships no type declarations; the little of it that scripts/bankAs.ts uses.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  interface AccessTokenLike {
    destroy(): Promise<void>;
  }

  export default class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    on(event: string, listener: (...args: never[]) => void): this;
    ClientCredentials: { find(token: string): Promise<AccessTokenLike | undefined> };
    AccessToken: { find(token: string): Promise<AccessTokenLike | undefined> };
  }
}
