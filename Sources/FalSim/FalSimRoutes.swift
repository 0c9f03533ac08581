/// fal's URL rules: which part of a model id names the app, and the URLs of a request.
enum FalSimRoutes {
    /// The `owner/app` part of a model id (with a leading `workflows/` or `comfy/` namespace):
    /// `fal-ai/flux/dev` -> `fal-ai/flux`.
    static func appPath(ofModel model: String) -> String {
        let segments = model.split(separator: "/", omittingEmptySubsequences: true)
        let count = ["workflows", "comfy"].contains(segments.first ?? "") ? 3 : 2
        return segments.prefix(count).joined(separator: "/")
    }

    static func responseURL(base: String, appPath: String, id: String) -> String {
        "\(base)/\(appPath)/requests/\(id)"
    }

    static func statusURL(base: String, appPath: String, id: String) -> String {
        responseURL(base: base, appPath: appPath, id: id) + "/status"
    }

    static func cancelURL(base: String, appPath: String, id: String) -> String {
        responseURL(base: base, appPath: appPath, id: id) + "/cancel"
    }
}
