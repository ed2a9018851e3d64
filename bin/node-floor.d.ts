export declare const ENGINES: string;
export declare function supported(version: string): boolean;
