import Hummingbird
enum ClapperPlaceholder {}
